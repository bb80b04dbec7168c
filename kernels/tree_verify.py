"""Triton ``verify_tree_greedy``: a drop-in for sgl-kernel's CUDA op.

Greedy verification of a draft tree: start at the root, and at each node follow
the child (first-child / next-sibling order) whose draft token equals the
target's argmax at that node; stop at the first node where no child matches or
after ``accept_index.shape[1] - 1`` accepted drafts.

Outputs (in place, as the CUDA op):
* ``accept_index[b, :k+1]``  global ids (``retrive_index`` values) of the root
  and the k accepted nodes; the rest of the row is left untouched (callers fill
  it with -1);
* ``accept_token_num[b] = k``  accepted draft tokens (the bonus token is extra);
* ``predicts[id]``  for the root and each accepted node, the target's token
  there: the next accepted draft token, and for the last one the bonus token.
  Other entries are left untouched.

``predicts`` and ``target_predict`` are indexed by the global id, i.e. as flat
``[batch * draft_tokens]`` arrays. One program per request, one launch.
"""

import torch
import triton
import triton.language as tl


@triton.jit
def _verify_tree_greedy_kernel(
    predicts_ptr,
    accept_index_ptr,
    accept_token_num_ptr,
    candidates_ptr,
    retrive_index_ptr,
    retrive_next_token_ptr,
    retrive_next_sibling_ptr,
    target_predict_ptr,
    candidates_stride,
    index_stride,
    next_token_stride,
    next_sibling_stride,
    accept_stride,
    NUM_SPEC: tl.constexpr,  # accept_index.shape[1]: max accepted drafts + 1
):
    bx = tl.program_id(0).to(tl.int64)
    out_ty = predicts_ptr.dtype.element_ty
    acc_ty = accept_index_ptr.dtype.element_ty

    last = tl.load(retrive_index_ptr + bx * index_stride).to(tl.int64)
    tl.store(accept_index_ptr + bx * accept_stride, last.to(acc_ty))
    num_accepted = tl.cast(0, tl.int32)
    cur = tl.cast(0, tl.int64)  # node (position in this request's tree)
    level = 1
    go = 1
    while (level < NUM_SPEC) & (go == 1):
        target = tl.load(target_predict_ptr + last)
        cur = tl.load(retrive_next_token_ptr + bx * next_token_stride + cur).to(tl.int64)
        matched = 0
        while (cur != -1) & (matched == 0):
            if tl.load(candidates_ptr + bx * candidates_stride + cur) == target:
                tl.store(predicts_ptr + last, target.to(out_ty))
                num_accepted += 1
                last = tl.load(retrive_index_ptr + bx * index_stride + cur).to(tl.int64)
                tl.store(accept_index_ptr + bx * accept_stride + num_accepted, last.to(acc_ty))
                matched = 1
            else:
                cur = tl.load(retrive_next_sibling_ptr + bx * next_sibling_stride + cur).to(tl.int64)
        go = matched  # no child matched: the walk ends here
        level += 1

    tl.store(accept_token_num_ptr + bx, num_accepted.to(accept_token_num_ptr.dtype.element_ty))
    # the bonus token: the target's choice after the last accepted node
    tl.store(predicts_ptr + last, tl.load(target_predict_ptr + last).to(out_ty))


def check_rows(bs: int, **tensors) -> None:
    """Each tensor is [bs, width] with unit column stride: the kernels step rows by stride(0)."""
    for name, t in tensors.items():
        if t.dim() != 2 or t.shape[0] != bs or (t.shape[1] > 1 and t.stride(1) != 1):
            raise ValueError(f"{name} must be a [bs, width] tensor with unit column stride")


def verify_tree_greedy(
    predicts: torch.Tensor,  # mutable, [bs * draft_tokens (+ spare slots)]
    accept_index: torch.Tensor,  # mutable, [bs, num_spec_tokens]
    accept_token_num: torch.Tensor,  # mutable, [bs]
    candidates: torch.Tensor,  # [bs, draft_tokens]
    retrive_index: torch.Tensor,
    retrive_next_token: torch.Tensor,
    retrive_next_sibling: torch.Tensor,
    target_predict: torch.Tensor,  # [bs, draft_tokens]
) -> None:
    bs, num_draft = candidates.shape
    num_spec = accept_index.shape[1]
    if num_draft <= 0 or num_spec <= 0:
        raise ValueError("need draft_tokens > 0 and accept_index.shape[1] > 0")
    # at least bs * draft_tokens: SGLang's V1 EAGLE worker allocates one slot more (never written)
    if not predicts.is_contiguous() or predicts.numel() < bs * num_draft:
        raise ValueError("predicts must be a contiguous tensor of at least bs * draft_tokens entries")
    if target_predict.numel() != bs * num_draft:
        raise ValueError("target_predict must hold bs * draft_tokens entries")
    check_rows(bs, candidates=candidates, retrive_index=retrive_index,
               retrive_next_token=retrive_next_token, retrive_next_sibling=retrive_next_sibling,
               accept_index=accept_index)
    if bs == 0:
        return
    _verify_tree_greedy_kernel[(bs,)](
        predicts,
        accept_index,
        accept_token_num,
        candidates,
        retrive_index,
        retrive_next_token,
        retrive_next_sibling,
        target_predict.contiguous(),  # read by global id, i.e. flat
        candidates.stride(0),
        retrive_index.stride(0),
        retrive_next_token.stride(0),
        retrive_next_sibling.stride(0),
        accept_index.stride(0),
        NUM_SPEC=num_spec,
    )
