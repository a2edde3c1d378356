"""The file names of a published channel: its index files and their folders."""

REPODATA_JSON = "repodata.json"
REPODATA_ZST = "repodata.json.zst"
REPODATA_BZ2 = "repodata.json.bz2"
CURRENT_REPODATA = "current_repodata.json"
CURRENT_REPODATA_ZST = "current_repodata.json.zst"  # conda's classic solver asks it first
RUN_EXPORTS_JSON = "run_exports.json"
CHANNELDATA = "channeldata.json"
NOARCH = "noarch"
SHARD_SUFFIX = ".msgpack.zst"
