"""Triton ``build_tree_kernel_efficient``: a drop-in for sgl-kernel's CUDA op.

Turns the draft tree that EAGLE's draft loop selected (``parent_list`` and the
sorted ``selected_index`` from ``organize_draft_results``) into what target
verification needs, for every request of the batch:

* ``tree_mask``      which tree nodes each node attends to (itself, its ancestors
                     and the root, i.e. the last verified token);
* ``positions``      ``seq_len + depth`` of each node;
* ``retrive_index``  global node id ``b * draft_token_num + i``;
* ``retrive_next_token`` / ``retrive_next_sibling``  the tree as first-child /
                     next-sibling links, children in increasing node order.

Node ``i >= 1`` is ``selected_index[b, i - 1]``; node 0 is the root. The parent
of node ``i`` is found as in the CUDA op: ``block = selected_index[i-1] // topk``;
block 0 means the root, otherwise ``parent_list[block]`` is the parent's entry in
``selected_index``. A node whose parent was not selected is left unlinked (the
CUDA op prints a warning and skips it).

One program per request, one launch. Unlike the CUDA op, every row of the three
``retrive_*`` outputs is written (the CUDA op relies on the caller's ``-1`` fill
for nodes without child / sibling), so ``torch.empty`` buffers work too; with the
usual ``-1`` fill the results are identical. The ``[0, seq_len)`` prefix columns
of a FULL_MASK row are left alone, as in the CUDA op (the caller fills them).
"""

import torch
import triton
import triton.language as tl

FULL_MASK, QLEN_ONLY, QLEN_ONLY_BITPACKING = 0, 1, 2


@triton.jit
def _build_tree_kernel(
    parent_list_ptr,
    selected_index_ptr,
    verified_seq_len_ptr,
    tree_mask_ptr,  # raw bytes (uint8 view), as the CUDA op treats it
    positions_ptr,
    retrive_index_ptr,
    retrive_next_token_ptr,
    retrive_next_sibling_ptr,
    parent_stride,
    parent_width,
    selected_stride,
    index_stride,
    next_token_stride,
    next_sibling_stride,
    topk,
    depth,
    N: tl.constexpr,  # draft_token_num
    BLOCK_N: tl.constexpr,
    ROWS: tl.constexpr,  # rows per tile of the [ROWS, BLOCK_N] work arrays
    BLOCK_B: tl.constexpr,
    MODE: tl.constexpr,
    MASK_BYTES: tl.constexpr,  # bytes per packed row (QLEN_ONLY_BITPACKING)
):
    bid = tl.program_id(0).to(tl.int64)
    nodes = tl.arange(0, BLOCK_N)
    is_draft = (nodes > 0) & (nodes < N)

    # Parent of every node: 0 = the root, -1 = none (the root itself, or a
    # parent missing from selected_index).
    sel_row = selected_index_ptr + bid * selected_stride
    sel = tl.load(sel_row + nodes - 1, mask=is_draft, other=0)
    block = sel // topk
    via_list = is_draft & (block > 0) & (block < parent_width)
    parent_tok = tl.load(parent_list_ptr + bid * parent_stride + block, mask=via_list, other=-1)
    parent = tl.where(is_draft & (block == 0), 0, -1)
    for pp in range(N - 1):
        # first entry of selected_index that holds the parent wins, as in CUDA
        hit = via_list & (parent < 0) & (parent_tok == tl.load(sel_row + pp))
        parent = tl.where(hit, pp + 1, parent)

    seq_len = tl.load(verified_seq_len_ptr + bid).to(tl.int64)
    if MODE == 0:
        # FULL_MASK rows of request b start after all earlier requests' rows.
        acc = tl.zeros([BLOCK_B], dtype=tl.int64)
        for b0 in range(0, bid, BLOCK_B):
            offs = b0 + tl.arange(0, BLOCK_B)
            acc += tl.load(verified_seq_len_ptr + offs, mask=offs < bid, other=0).to(tl.int64)
        mask_base = (tl.sum(acc, axis=0) + N * bid) * N + seq_len
        row_stride = seq_len + N
    else:
        mask_base = N * N * bid
        row_stride = N

    for r0 in range(0, BLOCK_N, ROWS):
        rows = r0 + tl.arange(0, ROWS)
        row_ok = rows < N
        same = rows[:, None] == nodes[None, :]
        row_parent = tl.sum(tl.where(same, parent[None, :], 0), axis=1)

        # first child = smallest node whose parent is this row
        child = parent[None, :] == rows[:, None]
        first_child = tl.min(tl.where(child, nodes[None, :], BLOCK_N), axis=1)
        # next sibling = smallest larger node with the same (existing) parent
        sib = (parent[None, :] == row_parent[:, None]) & (nodes[None, :] > rows[:, None])
        sib = sib & (row_parent[:, None] >= 0)
        next_sib = tl.min(tl.where(sib, nodes[None, :], BLOCK_N), axis=1)

        # Ancestors: walk up at most `depth` steps (a node's depth is at most
        # the number of draft steps), marking every non-root node on the way.
        attend = (nodes[None, :] == 0) & row_ok[:, None]
        anc = tl.where(row_ok & (rows > 0), rows, -1)
        node_depth = tl.zeros([ROWS], dtype=tl.int64)
        for _ in range(depth):
            up = anc > 0
            on_path = nodes[None, :] == anc[:, None]
            attend = attend | (on_path & up[:, None])
            node_depth += up.to(tl.int64)
            anc = tl.where(up, tl.sum(tl.where(on_path, parent[None, :], 0), axis=1), -1)

        out = bid * N + rows
        tl.store(retrive_index_ptr + bid * index_stride + rows, out, mask=row_ok)
        tl.store(
            retrive_next_token_ptr + bid * next_token_stride + rows,
            tl.where(first_child < BLOCK_N, first_child, -1).to(tl.int64),
            mask=row_ok,
        )
        tl.store(
            retrive_next_sibling_ptr + bid * next_sibling_stride + rows,
            tl.where(next_sib < BLOCK_N, next_sib, -1).to(tl.int64),
            mask=row_ok,
        )
        tl.store(positions_ptr + out, seq_len + node_depth, mask=row_ok)

        if MODE == 2:
            # bit k of a row's little-endian word = attends to node k
            bits = tl.where(attend, tl.full([1, BLOCK_N], 1, tl.int64) << nodes[None, :].to(tl.int64), 0)
            word = tl.sum(bits, axis=1)
            byte = tl.arange(0, MASK_BYTES)
            vals = (word[:, None] >> (8 * byte[None, :]).to(tl.int64)) & 0xFF
            tl.store(
                tree_mask_ptr + out[:, None] * MASK_BYTES + byte[None, :],
                vals.to(tl.uint8),
                mask=row_ok[:, None],
            )
        else:
            ptrs = tree_mask_ptr + mask_base + rows[:, None].to(tl.int64) * row_stride + nodes[None, :]
            tl.store(ptrs, attend.to(tl.uint8), mask=row_ok[:, None] & (nodes[None, :] < N))


def build_tree_kernel_efficient(
    parent_list: torch.Tensor,
    selected_index: torch.Tensor,
    verified_seq_len: torch.Tensor,
    tree_mask: torch.Tensor,
    positions: torch.Tensor,
    retrive_index: torch.Tensor,
    retrive_next_token: torch.Tensor,
    retrive_next_sibling: torch.Tensor,
    topk: int,
    depth: int,
    draft_token_num: int,
    tree_mask_mode: int = FULL_MASK,
) -> None:
    """Same arguments, in-place outputs and mask layouts as sgl-kernel's op.

    tree_mask layouts (bytes; the buffer's dtype only fixes its byte size):
      FULL_MASK (0): request b owns rows of ``seq_len[b] + n`` bytes starting at
        ``(sum(seq_len[:b]) + n * b) * n``; the kernel writes the last n columns.
      QLEN_ONLY (1): ``n x n`` bytes per request.
      QLEN_ONLY_BITPACKING (2): one little-endian 1/2/4-byte word per node row
        (n <= 8 / 16 / 32), bit k set when the row attends to node k.
    """
    mode = int(tree_mask_mode)
    n = int(draft_token_num)
    if not (topk > 0 and depth > 0 and 0 < n <= 1024):
        raise ValueError(f"need topk > 0, depth > 0, 0 < draft_token_num <= 1024; got {topk=}, {depth=}, {n=}")
    if mode not in (FULL_MASK, QLEN_ONLY, QLEN_ONLY_BITPACKING):
        raise ValueError(f"unknown tree_mask_mode {tree_mask_mode}")
    bs = verified_seq_len.shape[0]
    mask_bytes = 1
    if mode == QLEN_ONLY_BITPACKING:
        if n > 32:
            raise ValueError(f"QLEN_ONLY_BITPACKING needs draft_token_num <= 32, got {n}")
        mask_bytes = 4 if n > 16 else (2 if n > 8 else 1)
    for name, t in (("retrive_index", retrive_index), ("retrive_next_token", retrive_next_token),
                    ("retrive_next_sibling", retrive_next_sibling), ("selected_index", selected_index)):
        if t.dim() != 2 or (t.shape[1] > 1 and t.stride(1) != 1):
            raise ValueError(f"{name} must be a [batch, width] tensor with unit column stride")
    if not (positions.is_contiguous() and tree_mask.is_contiguous()):
        raise ValueError("positions and tree_mask must be contiguous")
    mask_u8 = tree_mask.view(-1).view(torch.uint8)  # the CUDA op writes raw bytes
    if mode == QLEN_ONLY_BITPACKING:
        need = bs * n * mask_bytes
    elif mode == QLEN_ONLY:
        need = bs * n * n
    else:
        need = 0  # depends on seq_lens; checking it would need a host sync
    if mask_u8.numel() < need:
        raise ValueError(f"tree_mask holds {mask_u8.numel()} bytes, needs {need}")
    if bs == 0:
        return
    width = parent_list.shape[1] if parent_list.dim() > 1 else parent_list.numel()
    # An empty parent_list (depth 1) is never read; hand the kernel a real pointer.
    parent_arg = parent_list if parent_list.numel() > 0 else selected_index
    block_n = triton.next_power_of_2(n)
    rows = max(1, min(block_n, 4096 // block_n))
    _build_tree_kernel[(bs,)](
        parent_arg,
        selected_index,
        verified_seq_len,
        mask_u8,
        positions,
        retrive_index,
        retrive_next_token,
        retrive_next_sibling,
        parent_list.stride(0) if parent_list.dim() > 1 else 0,
        width,
        selected_index.stride(0),
        retrive_index.stride(0),
        retrive_next_token.stride(0),
        retrive_next_sibling.stride(0),
        topk,
        depth,
        N=n,
        BLOCK_N=block_n,
        ROWS=rows,
        BLOCK_B=128,
        MODE=mode,
        MASK_BYTES=mask_bytes,
    )
