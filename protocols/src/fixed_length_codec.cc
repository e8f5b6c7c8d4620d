// placeholder: filled in by the codec work (issue 4)
