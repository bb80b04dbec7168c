"""Plain-torch references of the three EAGLE tree ops (readability first).

Same signatures and in-place outputs as the Triton ops (and sgl-kernel's CUDA
ops); loops over Python lists, meant for tests and for reading, not for speed.

Vocabulary used throughout, per request b with n = draft_tokens:
  node i       position in the request's tree; node 0 is the root (the last
               verified token), node i >= 1 is ``selected_index[b, i - 1]``.
  global id    ``retrive_index[b, i] = b * n + i``; ``predicts``,
               ``target_predict`` and ``accept_index`` speak in global ids.
"""

import torch

FULL_MASK, QLEN_ONLY, QLEN_ONLY_BITPACKING = 0, 1, 2


def tree_parents(parent_list_row, selected_row, topk, n):
    """parent[i] for every node: 0 = root, None = root itself or parent not selected."""
    parent = [None] * n
    for i in range(1, n):
        block = selected_row[i - 1] // topk
        if block == 0:
            parent[i] = 0  # a first-step token hangs off the root
            continue
        if block >= len(parent_list_row):
            continue
        wanted = parent_list_row[block]  # the parent's entry in selected_index
        for pp in range(n - 1):
            if selected_row[pp] == wanted:
                parent[i] = pp + 1
                break
    return parent


def build_tree_kernel_efficient(
    parent_list,
    selected_index,
    verified_seq_len,
    tree_mask,
    positions,
    retrive_index,
    retrive_next_token,
    retrive_next_sibling,
    topk,
    depth,
    draft_token_num,
    tree_mask_mode=FULL_MASK,
):
    n = draft_token_num
    bs = verified_seq_len.shape[0]
    seq_lens = verified_seq_len.tolist()
    mask = tree_mask.view(-1).view(torch.uint8)  # raw bytes, as the CUDA op
    mask_bytes = 4 if n > 16 else (2 if n > 8 else 1)
    for b in range(bs):
        parents = parent_list[b].tolist() if parent_list.numel() else []
        parent = tree_parents(parents, selected_index[b].tolist(), topk, n)

        # retrieval links: children of a node in increasing node order
        for i in range(n):
            retrive_index[b, i] = b * n + i
            retrive_next_token[b, i] = -1
            retrive_next_sibling[b, i] = -1
        for p in range(n):
            children = [i for i in range(1, n) if parent[i] == p]
            if children:
                retrive_next_token[b, p] = children[0]
            for child, next_child in zip(children, children[1:]):
                retrive_next_sibling[b, child] = next_child

        for i in range(n):
            # walk up to the root; every node on the way is attended to
            attend = {0}
            node, node_depth = i, 0
            while node not in (0, None) and node_depth < depth:
                attend.add(node)
                node_depth += 1
                node = parent[node]
            positions[b * n + i] = seq_lens[b] + node_depth

            if tree_mask_mode == QLEN_ONLY_BITPACKING:
                word = sum(1 << k for k in attend)
                for j in range(mask_bytes):
                    mask[(b * n + i) * mask_bytes + j] = (word >> (8 * j)) & 0xFF
                continue
            if tree_mask_mode == FULL_MASK:
                # rows of seq_len + n bytes; the tree part follows the prefix
                start = (sum(seq_lens[:b]) + n * b) * n + (seq_lens[b] + n) * i + seq_lens[b]
            else:
                start = n * n * b + n * i
            for k in range(n):
                mask[start + k] = int(k in attend)


def verify_tree_greedy(
    predicts,
    accept_index,
    accept_token_num,
    candidates,
    retrive_index,
    retrive_next_token,
    retrive_next_sibling,
    target_predict,
):
    bs = candidates.shape[0]
    num_spec = accept_index.shape[1]
    target = target_predict.reshape(-1).tolist()  # by global id
    for b in range(bs):
        tokens = candidates[b].tolist()
        ids = retrive_index[b].tolist()
        first_child = retrive_next_token[b].tolist()
        next_sibling = retrive_next_sibling[b].tolist()

        node, last = 0, ids[0]
        accept_index[b, 0] = last
        accepted = 0
        while accepted < num_spec - 1:
            # the child whose draft token is what the target predicted here
            child = first_child[node]
            while child != -1 and tokens[child] != target[last]:
                child = next_sibling[child]
            if child == -1:
                break  # first miss
            predicts[last] = target[last]
            accepted += 1
            node, last = child, ids[child]
            accept_index[b, accepted] = last
        accept_token_num[b] = accepted
        predicts[last] = target[last]  # the bonus token


def tree_speculative_sampling_target_only(
    predicts,
    accept_index,
    accept_token_num,
    candidates,
    retrive_index,
    retrive_next_token,
    retrive_next_sibling,
    uniform_samples,
    uniform_samples_for_final_sampling,
    target_probs,
    draft_probs,
    threshold_single=1.0,
    threshold_acc=1.0,
    deterministic=True,
):
    bs = candidates.shape[0]
    num_spec = accept_index.shape[1]
    vocab = target_probs.shape[-1]
    threshold_acc = max(threshold_acc, 1e-9)
    f32 = lambda x: torch.tensor(x, dtype=torch.float32)  # noqa: E731  (CUDA math is fp32)
    t_single, t_acc = f32(threshold_single), f32(threshold_acc)
    for b in range(bs):
        tokens = candidates[b].tolist()
        ids = retrive_index[b].tolist()
        first_child = retrive_next_token[b].tolist()
        next_sibling = retrive_next_sibling[b].tolist()

        row, last = 0, ids[0]  # row: node whose target distribution picks next
        coin = uniform_samples[b, 0].float()
        accept_index[b, 0] = last
        accepted = 0
        while accepted < num_spec - 1:
            child = first_child[row]
            prob_acc = f32(0.0)
            while child != -1:
                q = target_probs[b, row, tokens[child]].float()
                prob_acc = prob_acc + q
                if q > 0 and (coin < prob_acc / t_acc or q >= t_single):
                    break
                draft_probs[b, row, tokens[child]] = target_probs[b, row, tokens[child]]
                child = next_sibling[child]
            if child == -1:
                break  # every child rejected (or none)
            predicts[last] = tokens[child]
            accepted += 1
            row, last = child, ids[child]
            coin = uniform_samples[b, child].float()
            accept_index[b, accepted] = last
        accept_token_num[b] = accepted

        # final token from the residual relu(q - p); plain q after a full accept
        q = target_probs[b, row].float()
        p = draft_probs[b, row].float() if accepted != num_spec - 1 else torch.zeros_like(q)
        residual = (q - p).clamp_min(0)
        u = uniform_samples_for_final_sampling[b].float() * residual.sum()
        above = ((residual.cumsum(0) > u) & (residual > 0)).nonzero()
        with_mass = (residual > 0).nonzero()
        if len(above):
            token = above[0, 0].item()
        elif len(with_mass):
            token = with_mass[-1, 0].item()  # rounding left u past the end
        else:
            token = vocab - 1
        predicts[last] = token
