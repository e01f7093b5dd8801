"""moto's server with its Kinesis resharding made to behave as Kinesis does, for the
kinesis connector's tests. Two fixes of moto (5.2.5), everything else is moto's own:

1. moto routes a record by its hash key to the first shard whose range holds it,
   closed shards included: after a SplitShard or MergeShards every record keeps
   going into the closed parent and none into the children. A closed shard takes no
   records in Kinesis: here a record goes to the open shard of its key (and the
   ending hash key is part of a shard's range, as in Kinesis).
2. moto's SplitShard moves the parent's records into the children (put again, with
   new sequence numbers), and MergeShards copies both parents' records into the
   child. In Kinesis a parent keeps its records (readable until they expire) and a
   child starts empty: here the children start empty and the parents keep theirs.

Usage: python moto_kinesis.py -H 127.0.0.1 -p PORT  (the arguments of moto_server)
"""
import sys
from collections import OrderedDict

from moto.kinesis import models
from moto.kinesis.exceptions import InvalidArgumentError
from moto.utilities.utils import md5_hash


def get_shard_for_key(self, partition_key, explicit_hash_key):
    if not isinstance(partition_key, str) or len(partition_key) > 256:
        raise InvalidArgumentError("partition_key")
    if explicit_hash_key:
        if not isinstance(explicit_hash_key, str):
            raise InvalidArgumentError("explicit_hash_key")
        key = int(explicit_hash_key)
        if key >= 2**128:
            raise InvalidArgumentError("explicit_hash_key")
    else:
        key = int(md5_hash(partition_key.encode("utf-8")).hexdigest(), 16)
    for shard in self.shards.values():
        if shard.is_open and shard.starting_hash <= key <= shard.ending_hash:
            return shard
    return None


models.Stream.get_shard_for_key = get_shard_for_key

_split_shard = models.Stream.split_shard
_merge_shards = models.Stream.merge_shards


def split_shard(self, shard_to_split, new_starting_hash_key):
    parent = self.shards.get(shard_to_split)
    kept = parent.records if parent is not None else None
    before = set(self.shards)
    _split_shard(self, shard_to_split, new_starting_hash_key)
    for shard_id in set(self.shards) - before:
        self.shards[shard_id].records = OrderedDict()
    parent.records = kept


def merge_shards(self, shard_to_merge, adjacent_shard_to_merge):
    before = set(self.shards)
    _merge_shards(self, shard_to_merge, adjacent_shard_to_merge)
    for shard_id in set(self.shards) - before:
        self.shards[shard_id].records = OrderedDict()


models.Stream.split_shard = split_shard
models.Stream.merge_shards = merge_shards

if __name__ == "__main__":
    from moto.server import main

    sys.exit(main(sys.argv[1:]))
