"""Record vLLM's own prefix-caching decisions on the streams of ``vllm_streams.py``.

Run once, where vLLM is installed (it is not a dependency of radixlib; CI never runs this):

    python -m venv /tmp/vllm-venv && /tmp/vllm-venv/bin/pip install vllm==0.33.0 (or --no-deps, plus
    what its imports ask for) && PYTHONPATH=. /tmp/vllm-venv/bin/python tests/data/record_vllm.py

It drives vLLM's ``KVCacheManager`` directly, the way its scheduler does: a request is
hashed on arrival (``get_request_block_hasher`` with ``sha256``), admitted with
``get_computed_blocks`` + ``allocate_slots``, extended with ``append_output_token_ids`` +
``allocate_slots``, and finished with ``free``. The pool has one full-attention group and
``num_pages + 1`` blocks (vLLM keeps block 0 as its null block). It writes
``vllm_decisions.json`` beside this file, and says whether radixlib agrees.
"""
from __future__ import annotations

import json
import sys
from importlib.metadata import version
from pathlib import Path

import torch
from vllm.sampling_params import SamplingParams
from vllm.utils.hashing import sha256
from vllm.v1.core.kv_cache_manager import KVCacheManager
from vllm.v1.core.kv_cache_utils import get_block_hash, get_request_block_hasher, init_none_hash
from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheConfig, KVCacheGroupSpec
from vllm.v1.request import Request

sys.path.insert(0, str(Path(__file__).parent))
from vllm_streams import STREAMS, OursSide, fingerprint, operations, play  # noqa: E402

OUT = Path(__file__).with_name("vllm_decisions.json")
MAX_MODEL_LEN = 1 << 20


class VllmSide:
    """vLLM 0.33's ``KVCacheManager`` behind the ``Side`` interface of ``vllm_streams``."""

    def __init__(self, stream):
        spec = FullAttentionSpec(block_size=stream.block_size, num_kv_heads=1, head_size=1, dtype=torch.float32)
        config = KVCacheConfig(num_blocks=stream.num_pages + 1, kv_cache_tensors=[],
                               kv_cache_groups=[KVCacheGroupSpec(["layer.0"], spec)])
        self.manager = KVCacheManager(config, max_model_len=MAX_MODEL_LEN, scheduler_block_size=stream.block_size,
                                      hash_block_size=stream.block_size, enable_caching=True)
        self.hasher = get_request_block_hasher(stream.block_size, sha256)
        self.requests = {}

    def admit(self, rid, tokens, salt):
        req = Request(str(rid), list(tokens), SamplingParams(max_tokens=MAX_MODEL_LEN), None,
                      block_hasher=self.hasher, cache_salt=salt)
        blocks, hit, _ = self.manager.get_computed_blocks(req)
        if self.manager.allocate_slots(req, len(tokens) - hit, hit, blocks) is None:
            return None
        req.num_computed_tokens = len(tokens)
        self.requests[rid] = req
        return hit

    def extend(self, rid, tokens):
        req = self.requests[rid]
        req.append_output_token_ids(list(tokens))
        if self.manager.allocate_slots(req, len(tokens)) is None:
            return False
        req.num_computed_tokens += len(tokens)
        return True

    def free(self, rid):
        self.manager.free(self.requests.pop(rid))

    def free_blocks(self):
        return self.manager.block_pool.get_num_free_blocks()

    def snapshot(self):
        pool = self.manager.block_pool
        queue = [get_block_hash(b.block_hash) for b in pool.free_block_queue.get_all_free_blocks() if b.block_hash]
        return queue, sorted(get_block_hash(b.block_hash) for b in pool.blocks if b.block_hash)


def main() -> None:
    init_none_hash(sha256)            # vLLM's engine does this at start-up (seed "vllm-none-hash")
    recorded = {"vllm": version("vllm"), "streams": {}}
    for name, stream in STREAMS.items():
        ops = operations(stream)
        theirs = play(ops, VllmSide(stream))
        ours = play(ops, OursSide(stream))
        first = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), None)
        print(f"{name}: {len(ops)} ops, radixlib agrees" if first is None else f"{name}: first difference at op "
              f"{first} {str(ops[first])[:60]}: ours {ours[first]}, vLLM {theirs[first]}")
        recorded["streams"][name] = {"stream": stream._asdict(), "fingerprint": fingerprint(ops), "outcomes": theirs}
    OUT.write_text(json.dumps(recorded, separators=(",", ":")) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
