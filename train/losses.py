"""SymNets losses (paper eq. 5-10, 12, 13) as pure functions of head logits.

``logits_s`` [Ns, 2K] and ``logits_t`` [Nt, 2K] are all 2K outputs on a source and a target
batch; ``y_s`` [Ns] holds source labels in 0..K-1. The log of a half-sum of the 2K-way
softmax is logsumexp(half) - logsumexp(all): exact, stable for any logits, no epsilons.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from symnets_deploy.enums import Ablation


def _halves(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    k = logits.shape[1] // 2
    return logits[:, :k], logits[:, k:]


def log_source_half(logits: torch.Tensor) -> torch.Tensor:
    """log sum_{k<K} p_st_k(x): log-probability that Cst calls x a source sample, [N]."""
    first, _ = _halves(logits)
    return torch.logsumexp(first, dim=1) - torch.logsumexp(logits, dim=1)


def log_target_half(logits: torch.Tensor) -> torch.Tensor:
    """log sum_{k>=K} p_st_k(x): log-probability that Cst calls x a target sample, [N]."""
    _, second = _halves(logits)
    return torch.logsumexp(second, dim=1) - torch.logsumexp(logits, dim=1)


def source_task_loss(logits_s: torch.Tensor, y_s: torch.Tensor) -> torch.Tensor:
    """Eq. 5: cross-entropy of Cs on labelled source samples."""
    return F.cross_entropy(_halves(logits_s)[0], y_s)


def target_task_loss(logits_s: torch.Tensor, y_s: torch.Tensor) -> torch.Tensor:
    """Eq. 6: cross-entropy of Ct on labelled source samples (cross-domain supervision)."""
    return F.cross_entropy(_halves(logits_s)[1], y_s)


def domain_discrimination_loss(logits_s: torch.Tensor, logits_t: torch.Tensor) -> torch.Tensor:
    """Eq. 7: Cst puts source samples in the first half and target samples in the second."""
    return -log_target_half(logits_t).mean() - log_source_half(logits_s).mean()


def category_confusion_loss(logits_s: torch.Tensor, y_s: torch.Tensor) -> torch.Tensor:
    """Eq. 8: for a source sample of class y, p_st_y and p_st_{y+K} both pulled to 1/2."""
    k = logits_s.shape[1] // 2
    log_p = F.log_softmax(logits_s, dim=1)
    rows = torch.arange(len(y_s), device=logits_s.device)
    return -0.5 * (log_p[rows, y_s + k].mean() + log_p[rows, y_s].mean())


def domain_confusion_loss(logits: torch.Tensor) -> torch.Tensor:
    """Eq. 9 on target samples (eq. 12 on source samples): both halves of Cst pulled to 1/2."""
    return -0.5 * (log_target_half(logits).mean() + log_source_half(logits).mean())


def paired_entropy_loss(logits_t: torch.Tensor) -> torch.Tensor:
    """Eq. 10: entropy of q_k = p_st_k + p_st_{k+K} on target samples."""
    first, second = _halves(logits_t)
    log_q = torch.logsumexp(torch.stack((first, second)), dim=0) - torch.logsumexp(logits_t, dim=1, keepdim=True)
    return -(log_q.exp() * log_q).sum(dim=1).mean()


def split_category_loss(logits_s: torch.Tensor, y_s: torch.Tensor) -> torch.Tensor:
    """Eq. 13: the mean of the Cs and Ct cross-entropies (used by the no-confusion ablation)."""
    return 0.5 * (source_task_loss(logits_s, y_s) + target_task_loss(logits_s, y_s))


def classifier_loss(logits_s: torch.Tensor, logits_t: torch.Tensor, y_s: torch.Tensor, ablation: Ablation = Ablation.none) -> dict[str, torch.Tensor]:
    """Eq. 11, first line (updates the head): E_s_task + E_t_task + E_st_domain.

    Returns:
        The terms by name plus ``"total"``; compute it on head outputs of detached features.
    """
    terms = {"source_task": source_task_loss(logits_s, y_s)}
    if Ablation(ablation) is not Ablation.no_ct_loss:
        terms["target_task"] = target_task_loss(logits_s, y_s)
    terms["domain_discrimination"] = domain_discrimination_loss(logits_s, logits_t)
    terms["total"] = sum(terms.values())
    return terms


def feature_loss(logits_s: torch.Tensor, logits_t: torch.Tensor, y_s: torch.Tensor, lam: float, ablation: Ablation = Ablation.none) -> dict[str, torch.Tensor]:
    """Eq. 11, second line (updates G): F_category + lam * (F_domain + M_st), with ablations.

    Returns:
        The terms by name (unweighted) plus ``"total"`` (weighted); compute it on head outputs
        made with detached head weights so that the head is not changed by it.
    """
    ablation = Ablation(ablation)
    terms: dict[str, torch.Tensor] = {}
    if ablation is Ablation.no_confusion:
        terms["category_loss"] = split_category_loss(logits_s, y_s)
    elif ablation is Ablation.domain_confusion_only:
        terms["source_domain_confusion"] = domain_confusion_loss(logits_s)
    else:
        terms["category_confusion"] = category_confusion_loss(logits_s, y_s)
    total = next(iter(terms.values()))
    weighted = []
    if ablation is not Ablation.no_confusion:
        terms["domain_confusion"] = domain_confusion_loss(logits_t)
        weighted.append(terms["domain_confusion"])
    if ablation is not Ablation.no_entropy:
        terms["entropy"] = paired_entropy_loss(logits_t)
        weighted.append(terms["entropy"])
    terms["total"] = total + lam * sum(weighted)
    return terms
