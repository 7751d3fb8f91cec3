/* Chimaera: the umbrella header. Link with -lchimaera. */
#ifndef CHIMAERA_CHIMAERA_H
#define CHIMAERA_CHIMAERA_H

#include "chimaera/version.h"
#include "chimaera/errors.h"
#include "chimaera/task.h"
#include "chimaera/client.h"
#include "chimaera/admin.h"
#include "chimaera/serve.h"

#endif
