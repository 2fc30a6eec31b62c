"""Stand-in for ansible-test's pip bootstrap script: pip from ensurepip, then the requested packages.

ensurepip runs in a child process so it keeps the machine's pip settings (index, CA bundle).
"""
import subprocess
import sys

UNSUPPORTED = {"--no-setuptools", "--no-wheel"}


def main():
    args = [arg for arg in sys.argv[1:] if arg not in UNSUPPORTED]
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade"])
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--upgrade"] + args)


if __name__ == "__main__":
    main()
