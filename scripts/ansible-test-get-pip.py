"""Stand-in for the pip bootstrap script that ansible-test downloads from its own CI file host.

That host is not reachable from these machines. ansible-test runs this file as get-pip.py
inside an empty virtual environment with pip install arguments: install pip with the
interpreter's own ensurepip, then install what was asked for from the package index."""
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]
subprocess.check_call([sys.executable, '-m', 'ensurepip', '--default-pip'], stdout=subprocess.DEVNULL)
subprocess.check_call([sys.executable, '-m', 'pip', 'install'] + args)
