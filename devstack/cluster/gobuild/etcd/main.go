// Command etcd is a thin wrapper around etcd's own entry point so it can be built from modules.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
