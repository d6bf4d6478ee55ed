/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rmpool/version.h - the project's version, at compile time.
 *
 * The one place the version is written: CMakeLists.txt reads these three
 * numbers for project(VERSION), so the library's file name, rmpool.pc,
 * the CMake package, every program's --version and debian/changelog
 * (checked by deploy/build-deb.sh) all follow it. rmpool.h includes this
 * header; rmp_version() gives the version of the library actually
 * loaded, which may be newer than the header a program was built with.
 */
#ifndef RMPOOL_VERSION_H
#define RMPOOL_VERSION_H

#define RMPOOL_VERSION_MAJOR 0
#define RMPOOL_VERSION_MINOR 1
#define RMPOOL_VERSION_PATCH 0

#define RMPOOL_VERSION_STR_(x) #x
#define RMPOOL_VERSION_STR(x) RMPOOL_VERSION_STR_(x)
/* "0.1.0" */
#define RMPOOL_VERSION                                                                   \
	RMPOOL_VERSION_STR(RMPOOL_VERSION_MAJOR) "." RMPOOL_VERSION_STR(RMPOOL_VERSION_MINOR) "." \
	RMPOOL_VERSION_STR(RMPOOL_VERSION_PATCH)
/* One number that orders versions: 0.1.0 is 100, 1.2.3 is 10203. */
#define RMPOOL_VERSION_NUMBER \
	(RMPOOL_VERSION_MAJOR * 10000 + RMPOOL_VERSION_MINOR * 100 + RMPOOL_VERSION_PATCH)

#endif /* RMPOOL_VERSION_H */
