"""A faithful, lightweight stand-in for Hugging Face TGI 3.x (launcher + router + shards).

Run it like the container's entrypoint: ``python -m devstack.tgi_simulator [launcher flags]``.
See :mod:`.launcher` for the simulation knobs, :mod:`.faults` for fault injection and
:mod:`.model` and :mod:`.tokens` for the model's own files and tokenizer.
"""

from .faults import FAULTS_ANNOTATION, FAULTS_ENV, Faults, parse_faults

__all__ = ["FAULTS_ANNOTATION", "FAULTS_ENV", "Faults", "parse_faults"]
