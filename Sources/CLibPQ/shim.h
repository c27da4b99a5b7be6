#ifndef ROLLCTL_CLIBPQ_SHIM_H
#define ROLLCTL_CLIBPQ_SHIM_H
#include <libpq-fe.h>
#endif
