"""`python -m sandbox.image build|tag`: build the sandbox image or print its tag."""

from __future__ import annotations

import argparse

from sandbox import image


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.image")
    parser.add_argument("command", choices=["build", "tag"])
    parser.add_argument("--base-image", default=image.DEFAULT_BASE)
    args = parser.parse_args()
    print(image.build(args.base_image) if args.command == "build" else image.default_tag())


if __name__ == "__main__":
    main()
