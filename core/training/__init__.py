"""Training: the settings of a run (settings), its loss and optimizer by name (components), the
loop that fits a network (loop), early stopping (early_stopping), learning-rate schedules
(schedule), the packed optimizer buffers (flat), what a run produced (result), estimates of
the memory a network and its data need (memory), and several processes on torch.distributed
(distributed, torchrun).
It may import the ground floor (`core.errors`, `core.lazy`, `core.keyvalue`), `core.plugin`,
`core.network` and `core.data`, never files or pipeline. Plugins import `core.training.flat`,
so this file stays empty: importing the package must not pull in torch.
"""
