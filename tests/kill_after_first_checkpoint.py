"""Run a stage script, SIGKILL-ing the process right after its first checkpoint is written: what a
pre-empted job or an out-of-memory kill leaves behind. Used by tests/test_checkpoints.py.

    python tests/kill_after_first_checkpoint.py recipes.sft.sft --config ... [--key value ...]
"""

import os
import runpy
import signal
import sys

from transformers import TrainerCallback
from transformers import trainer as hf_trainer


class KillAfterFirstSave(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no flush: as the kernel would


if __name__ == "__main__":
    hf_trainer.DEFAULT_CALLBACKS.append(KillAfterFirstSave)  # every Trainer the script builds gets it
    module, sys.argv = sys.argv[1], [sys.argv[1], *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__")
