// placeholder: filled in by the codec work (issue 4)
int main() { return 1; }
