"""Our torch verify-slot gather equals SGLang's own Triton kernel (interpreted) on ragged rows."""

import pytest
import torch

from sglang_eagle3_ext.patches import cpu_cache_locs


@pytest.mark.parametrize("seed", range(4))
def test_torch_slots_equal_sglangs_triton_kernel(seed):
    from sglang.kernels.ops.speculative.cache_locs import assign_extend_cache_locs
    from sglang.srt.utils import next_power_of_2

    g = torch.Generator().manual_seed(seed)
    bs, pool_rows, pool_len = 5, 8, 64
    req_to_token = torch.randperm(pool_rows * pool_len, generator=g).view(pool_rows, pool_len)
    req_to_token = req_to_token.to(torch.int32)
    req_pool_indices = torch.randperm(pool_rows, generator=g)[:bs].to(torch.int64)
    start = torch.randint(0, 40, (bs,), generator=g)
    lens = torch.randint(1, 9, (bs,), generator=g)
    end = start + lens
    draft_token_num = int(lens.max())

    expected = torch.full((bs * draft_token_num,), -1, dtype=torch.int64)
    assign_extend_cache_locs[(bs,)](req_pool_indices, req_to_token, start, end, expected,
                                    pool_len, next_power_of_2(bs))
    got = cpu_cache_locs.assign_extend_cache_locs_torch(
        req_pool_indices, req_to_token, start, end, bs, draft_token_num, "cpu")
    n = int(lens.sum())
    assert got.dtype == torch.int64 and got.shape == expected.shape
    assert torch.equal(got[:n], expected[:n])
    # and by hand: request i's row slice, in batch order
    manual = torch.cat([req_to_token[r, s:e] for r, s, e in zip(req_pool_indices, start, end)])
    assert torch.equal(got[:n], manual.to(torch.int64))


def test_patch_fills_the_gap_only_where_sglang_has_no_branch():
    from sglang.kernels.ops.speculative import cache_locs

    assert cpu_cache_locs.PATCH.run() == "applied", cpu_cache_locs.PATCH.detail  # no CUDA here
    req_to_token = torch.arange(40, dtype=torch.int32).view(2, 20)
    out = cache_locs.assign_extend_cache_locs_uniform_func(
        req_pool_indices=torch.tensor([1, 0]), req_to_token=req_to_token,
        start_offset=torch.tensor([3, 5]), batch_size=2, draft_token_num=4, device="cpu")
    assert out.tolist() == [23, 24, 25, 26, 5, 6, 7, 8]
    patched = cache_locs.assign_extend_cache_locs_func
    cpu_cache_locs.PATCH.run()  # idempotent: a second run does not wrap the wrapper
    assert cache_locs.assign_extend_cache_locs_func is patched
