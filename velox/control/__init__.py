"""The control plane: topics that tell every process what the others decided or counted.

Model activations (``versions``), partition owners (``owners``), apps (``apps``), retrain
requests (``retrain_requests``), model containers (``containers``), the workers' item totals for
the item corrections (``item_corrections``), and the topics the feedback pipeline needs
(``topics``). Each module owns its topic's name, creation, writes and followers.
"""
