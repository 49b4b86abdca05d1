#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "pynn/pynn.h"
extern unsigned long long T_pa,T_pb,T_mk;
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc,char**argv){
  int m=atoi(argv[1]),n=atoi(argv[2]),k=atoi(argv[3]); long iters=atol(argv[4]);
  float *a=aligned_alloc(64,(size_t)m*k*4),*b=aligned_alloc(64,(size_t)k*n*4),*c=aligned_alloc(64,(size_t)m*n*4);
  for(long i=0;i<(long)m*k;i++)a[i]=(float)(i%7)-3; for(long i=0;i<(long)k*n;i++)b[i]=(float)(i%5)-2;
  for(int r=0;r<3;r++){ T_pa=T_pb=T_mk=0; double t=now(); unsigned long long c0=__builtin_ia32_rdtsc();
   for(long i=0;i<iters;i++) pynn_gemm_f32(c,n,NULL,0,a,k,b,n,NULL,0,0,1.f,0.f,0,0.f,m,n,k,1);
   double dt=(now()-t)/iters; double tot=(double)(__builtin_ia32_rdtsc()-c0);
   printf("%.1f us %.1f GF/s | packA %.1f%% packB %.1f%% macro %.1f%% (tsc %.2f GHz)\n",dt*1e6,2.0*m*n*k/dt*1e-9,100*T_pa/tot,100*T_pb/tot,100*T_mk/tot, tot/(dt*iters)*1e-9);}
}
