#include "testutil.h"
int main(void){Suite *s=suite_create("x");return run_suite(s);}
