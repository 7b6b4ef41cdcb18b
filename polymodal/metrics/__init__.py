"""Metrics as pure functions of numpy arrays, by task: ``tasks`` (classification, multilabel,
regression; what training monitors), ``retrieval`` (Recall@K, mAP, median rank) and ``anomaly``
(AUROC, AUPRC, FPR at 95% TPR, the flag threshold). Training, evaluation and the benchmarks all
compute them from here."""
