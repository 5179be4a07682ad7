"""The fleet: discovery, sharding, and the instances this replica polls."""
