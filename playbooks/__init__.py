"""Package data: the lessons run by `lab play`."""
