/* A shared object that is not a module: it lacks chi_module_entry. */
__attribute__((visibility("default"))) int chi_test_not_a_module(void) { return 42; }
