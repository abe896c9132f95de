"""Constants of the tenants app."""

# Kubernetes reserves these namespaces (or they hold cluster machinery); tenants never get them.
RESERVED_NAMESPACES = frozenset(
    {"default", "kube-system", "kube-public", "kube-node-lease", "inference-portal"}
)
DNS1123_LABEL_MAX_LENGTH = 63

# API tokens look like "ipt_<prefix>_<secret>": the prefix finds the row, the secret is hashed.
API_TOKEN_SCHEME = "ipt"  # noqa: S105 - a public prefix, not a secret
API_TOKEN_PREFIX_LENGTH = 10
API_TOKEN_SECRET_BYTES = 32

# Gateway keys look like "igk_<prefix>_<secret>" (OpenAI clients accept any bearer string).
GATEWAY_KEY_SCHEME = "igk"
GATEWAY_KEY_PREFIX_LENGTH = 12
GATEWAY_KEY_SECRET_BYTES = 32
GATEWAY_MAX_REQUEST_BYTES_FLOOR = 1024
GATEWAY_MAX_REQUEST_BYTES_CEILING = 32 * 1024 * 1024

# Upper bounds that catch a typo (an extra zero) in a quota rather than describe real limits.
QUOTA_MAX_GPUS = 10_000
QUOTA_MAX_DEPLOYMENTS = 1_000
QUOTA_MAX_REPLICAS = 1_000
QUOTA_MAX_REQUESTS_PER_MINUTE = 10_000_000
QUOTA_MAX_TOKENS_PER_MINUTE = 1_000_000_000
