"""Realistic random inputs for the tree ops: draft trees built the way EAGLE's draft loop builds
them (spec_utils.select_top_k_tokens + eagle_utils.organize_draft_results). Shared by the tests
and the benchmark; tests/test_tree_kernels.py checks it against SGLang's own functions."""

import torch

def draft_steps(bs, topk, steps, vocab, gen):
    """(topk_p, topk_index) of each draft forward: row count bs, then bs * topk."""
    out = []
    for i in range(steps):
        rows = bs if i == 0 else bs * topk
        probs = torch.softmax(2 * torch.randn(rows, vocab, generator=gen), dim=-1)
        out.append(torch.topk(probs, topk, dim=-1))
    return out

def draft_tree(step_outputs, topk, num_draft):
    """parent_list, top_scores_index (selected_index), draft_tokens."""
    score_list, token_list, parents_list = [], [], []
    scores = None
    for i, (topk_p, topk_index) in enumerate(step_outputs):
        bs = topk_p.shape[0] if i == 0 else topk_p.shape[0] // topk
        if i == 0:
            scores = topk_p
            score_list.append(topk_p.unsqueeze(1))
            token_list.append(topk_index)
            parents_list.append(torch.arange(-1, topk).expand(bs, -1))
        else:
            expand = scores.unsqueeze(2) * topk_p.view(-1, topk, topk)
            scores, cs_index = torch.topk(expand.flatten(1), topk, dim=-1)
            score_list.append(expand)
            token_list.append(topk_index.view(-1, topk * topk))
            parents_list.append(cs_index + (topk * topk * (i - 1) + topk))
    flat_scores = torch.cat(score_list, dim=1).flatten(1)
    top_scores_index = torch.topk(flat_scores, num_draft - 1, dim=-1).indices.sort().values
    draft_tokens = torch.gather(torch.cat(token_list, dim=1), 1, top_scores_index)
    if len(parents_list) > 1:
        parent_list = torch.cat(parents_list[:-1], dim=1).contiguous()
    else:
        parent_list = torch.empty(scores.shape[0], 0, dtype=torch.long)
    return parent_list, top_scores_index, draft_tokens


def tree_children(next_token, next_sibling):
    """children[node] in sibling order, from one request's retrieval links."""
    children = []
    for node in range(len(next_token)):
        kids, c = [], next_token[node]
        while c != -1:
            kids.append(c)
            c = next_sibling[c]
        children.append(kids)
    return children
