"""The control plane: compacted topics that tell every process what the others decided.

Model activations (``versions``), partition owners (``owners``), apps (``apps``), retrain
requests (``retrain_requests``), model containers (``containers``), and the topics the feedback
pipeline needs (``topics``). Each module owns its topic's name, creation, writes and followers.
"""
