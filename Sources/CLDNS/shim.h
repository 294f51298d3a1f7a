#ifndef DNSFENCE_CLDNS_SHIM_H
#define DNSFENCE_CLDNS_SHIM_H
#include <stdio.h>
#include <stdlib.h>
#include <ldns/ldns.h>
#endif
