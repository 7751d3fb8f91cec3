// The C layouts a Swift caller fills (chi_task_t, chi_sm_md_task_t, chi_shm_ptr_t ...) and the
// CHI_* constants come with `import ChimaeraSwift`: the API's types expose them.
@_exported import CChimaeraABI
