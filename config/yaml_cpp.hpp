// yaml_cpp: includes yaml-cpp, silencing GCC 12's false dangling-pointer warning in its headers.
#pragma once

// GCC 12 warns about yaml-cpp 0.7's node/impl.h (a temporary's address kept by a Node that
// does not outlive it); the warning is known to be spurious there.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdangling-pointer"
#include <yaml-cpp/yaml.h>
#pragma GCC diagnostic pop
#else
#include <yaml-cpp/yaml.h>
#endif
