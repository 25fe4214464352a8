/*
 * simrun.c - PLACEHOLDER for the sim authors: see simrun.h.
 */
#include "simrun.h"
