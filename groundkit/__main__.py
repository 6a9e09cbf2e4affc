"""``python -m groundkit ...`` (and ``torchrun --nproc-per-node K -m groundkit benchmark ...``)."""
from groundkit.cli import main

if __name__ == "__main__":
    main()
