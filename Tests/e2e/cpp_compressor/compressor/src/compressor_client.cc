/* The compressor's client library: its calls are in compressor_client.h. */
#include "compressor/compressor_client.h"
