"""Evaluation: generation, the official BDD-OIA metrics, report, gallery and prediction."""
