"""Stage `generate`: the configured dataset's train/val/test splits into data/splits.npz."""

from pipelines.common import DATA_FILE, load_settings, stage
from src import data


@stage
def main() -> None:
    settings, _ = load_settings()
    splits = data.generate(settings.dataset, settings.trainer.seed)
    splits.save(DATA_FILE)
    print(
        f"{splits.info.name}: {len(splits.train)} train / {len(splits.val)} val / {len(splits.test)} test "
        f"sequences, digest {splits.digest()[:12]} → {DATA_FILE.name}"
    )


if __name__ == "__main__":
    main()
