"""The ``kubelite`` console script: wiring only; everything lives in kubelite.cli."""

from kubelite.cli.app import main as cli_main


def main() -> None:
    cli_main()


if __name__ == "__main__":
    main()
