/* SPDX-License-Identifier: Apache-2.0 */
/*
 * version.c - rmp_version(): the version of the library actually loaded.
 *
 * The header's RMPOOL_VERSION is fixed when a program is compiled; this
 * is fixed when the library is, so a program can tell (and log) which
 * librmpool it runs on. The numbers come from rmpool/version.h, which
 * CMakeLists.txt reads for the project's version.
 */
#include "rmpool.h"

const char *rmp_version(void)
{
	return RMPOOL_VERSION;
}
