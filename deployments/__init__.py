"""TGI deployments of registered models, rolled out blue/green on GPU node pools."""
