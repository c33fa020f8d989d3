import torch

# Tests use tiny models; one thread each keeps them quick and lets two test processes share
# a 2-core machine without oversubscription.
torch.set_num_threads(1)
