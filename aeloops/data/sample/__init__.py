"""The MNIST sample bundled with aeloops; see README.md beside this file."""
