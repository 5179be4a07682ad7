"""The configuration: YAML -> frozen dataclasses, validated with errors that name the key path."""

from htap_exporter.config.loader import (DEFAULT_SKIP_STATUSES, INSTANCE_ID_RE, AkSkAuth, AuthConfig, CollectorsConfig,
                                         Config, ConfigError, DiscoveryConfig, InstanceConfig, MetricsConfig,
                                         NodesConfig, PasswordAuth, PollConfig, ProjectConfig, QueryQueueConfig,
                                         ReplicationConfig, TokenAuth, TopSessionsConfig, expand_env,
                                         load_config, parse_config, parse_duration)
from htap_exporter.config.secrets import Secret, SecretError, SecretSource

__all__ = ["DEFAULT_SKIP_STATUSES", "INSTANCE_ID_RE", "AkSkAuth", "AuthConfig", "CollectorsConfig", "Config",
           "ConfigError", "DiscoveryConfig", "InstanceConfig", "MetricsConfig", "NodesConfig", "PasswordAuth",
           "PollConfig", "ProjectConfig", "QueryQueueConfig", "ReplicationConfig", "Secret", "SecretError",
           "SecretSource", "TokenAuth", "TopSessionsConfig", "expand_env", "load_config",
           "parse_config", "parse_duration"]
