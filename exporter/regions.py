"""Default endpoints per region: the GaussDB(for MySQL) host name differs by region."""

from __future__ import annotations

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


def default_endpoint(region: str) -> str:
    return f"https://{_GAUSSDB_HOST_BY_REGION.get(region, 'gaussdb')}.{region}.myhuaweicloud.com"


def default_iam_endpoint(region: str) -> str:
    return f"https://iam.{region}.myhuaweicloud.com"
