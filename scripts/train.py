"""Train one run: `python scripts/train.py model=gpt attention=flurka_performer task=wikitext2 scale=mini`.

Works alone and under `torchrun --nproc_per_node=N scripts/train.py ...` (DDP). Resume with
`init.mode=resume`; up-train with `init.mode=from_checkpoint init.path=<ckpt> attention=<variant>`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from flurka.train.loop import train
from flurka.train.naming import RunError


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    try:
        summary = train(cfg)
    except RunError as e:  # a mistake in the command: one line that says what to type, no traceback
        raise SystemExit(f"[flurka] error: {e}") from None
    # tokens/s skips the first trainer.throughput_skip_steps steps (compilation); a shorter run has no number
    speed = f"{summary['tokens_per_s']:,.0f} tokens/s" if summary["tokens_per_s"] else "tokens/s not measured"
    print(
        f"[flurka] {summary['attention']}: eval loss {summary.get('eval_loss', float('nan')):.4f}, {speed} "
        f"-> {summary['run_dir']}"
    )


if __name__ == "__main__":
    main()
