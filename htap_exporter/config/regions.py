"""Default endpoints per region: the GaussDB(for MySQL) host name differs by region."""

from __future__ import annotations

import difflib

# Regions whose GaussDB(for MySQL) API lives under another host name than `gaussdb.{region}`
# (from the official SDK's region table); every other region uses `gaussdb.{region}`.
_GAUSSDB_HOST_BY_REGION = {
    "tr-west-1": "gaussdbformysql",
    "ap-southeast-1": "gaussdbformysql",
    "ap-southeast-2": "gaussdbformysql",
    "cn-north-11": "gaussdbformysql",
    "me-east-1": "gaussdbformysql",
    "af-south-1": "gaussdb-mysql",
    "cn-east-5": "gaussdb-mysql",
    "la-north-2": "gaussdb-mysql",
    "cn-southwest-3": "gaussdb-mysql",
}

# Regions where the official SDKs know a GaussDB(for MySQL) endpoint. Any other region needs an
# explicit `endpoint`: a typo must fail at start, not as a DNS error on every poll.
KNOWN_REGIONS = frozenset({
    "af-south-1", "ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4",
    "cn-east-3", "cn-east-5", "cn-north-2", "cn-north-4", "cn-north-9", "cn-north-11",
    "cn-south-1", "cn-south-4", "cn-southwest-2", "cn-southwest-3", "la-north-2", "me-east-1",
    "ru-northwest-2", "sa-brazil-1", "tr-west-1",
}) | frozenset(_GAUSSDB_HOST_BY_REGION)


def nearest_region(region: str) -> str | None:
    """The known region a typo most likely meant, if any is close."""
    matches = difflib.get_close_matches(region, sorted(KNOWN_REGIONS), n=1, cutoff=0.8)
    return matches[0] if matches else None


def default_endpoint(region: str) -> str:
    return f"https://{_GAUSSDB_HOST_BY_REGION.get(region, 'gaussdb')}.{region}.myhuaweicloud.com"


def default_iam_endpoint(region: str) -> str:
    return f"https://iam.{region}.myhuaweicloud.com"
