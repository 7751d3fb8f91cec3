/* small_message (Md: plain fields; Io: a DT_WRITE | DT_EXPOSE bulk field), as built. */
#include "chi_fuzz_mods.h"

#define chi_module_entry chi_fuzz_small_message_entry
#include "../Mods/small_message/small_message.c"
