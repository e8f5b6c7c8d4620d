// placeholder: the worker pool (issue 7)
