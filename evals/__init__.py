"""Evaluation: dataset loaders, few-shot prompts, gold answers, pass@K and majority voting,
and the eval and score runners written against small sampler and verifier protocols.

A leaf package: imports nothing else of this project, so scoring never pulls in torch.
"""
