import os, sys; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from remez import *
def mono(n, c=0):
    return [ (lambda k: (lambda x: (x-c)**k))(k) for k in range(n)]
def G(r):
    with mp.extraprec(600):
        return (mp.expm1(r)-r-r*r/2)/r**3 if r != 0 else mp.mpf(1)/6
def H(z):
    with mp.extraprec(600):
        if z == 0: return mp.mpf(2)/3
        s = mp.sqrt(z); return (2*mp.atanh(s) - 2*s)/s**3
def S(z):
    with mp.extraprec(600):
        if z == 0: return -mp.mpf(1)/6
        s = mp.sqrt(z); return (mp.sin(s) - s)/s**3
def C(z):
    with mp.extraprec(600):
        if z == 0: return mp.mpf(1)/24
        s = mp.sqrt(z); return (mp.cos(s) - 1 + z/2)/z**2
def E(z):
    if z == 0: return 2/mp.sqrt(mp.pi)
    s = mp.sqrt(z); return mp.erf(s)/s
F = lambda x: mp.erfc(x)*mp.exp(x*x)
A = mp.mpf('0.34658'); ZL = (mp.sqrt(2)-1)**2/(mp.sqrt(2)+1)**2 * mp.mpf('1.0001'); ZS = mp.mpf('0.6170')
jobs = [
 ("expm1: G(r) = (expm1(r)-r-r^2/2)/r^3 on [-0.34658,0.34658], weight (r^2+0.01)/(1+r)", G, lambda r: (r**2+mp.mpf('0.01'))/(1+r), mono(10), -A, A),
 ("log: H(z) = (2atanh(s)-2s)/s^3, z=s^2 in [0,0.029440], weight (z+0.001)/2", H, lambda z: (z+mp.mpf('0.001'))/2, mono(8), 0, ZL),
 ("sin: S(z) = (sin(r)-r)/r^3, z=r^2 in [0,0.6170], weight z+0.01", S, lambda z: z+mp.mpf('0.01'), mono(7), 0, ZS),
 ("cos: C(z) = (cos(r)-1+z/2)/z^2, z=r^2 in [0,0.6170], weight 1.42(z^2+0.001)", C, lambda z: (z*z+mp.mpf('0.001'))*mp.mpf(1.42), mono(6), 0, ZS),
 ("erf: E(z) = erf(x)/x, z=x^2 in [0,1], weight 1/E", E, lambda z: 1/E(z), mono(13), 0, 1),
 ("erfc: F(x) = erfc(x)exp(x^2) in powers of (x-1.5), x in [1,2], weight exp(-x^2)", F, lambda x: mp.exp(-x*x), mono(17, mp.mpf(1.5)), 1, 2),
 ("erfc: F(x) = erfc(x)exp(x^2) in powers of (x-3), x in [2,4], weight exp(-x^2)", F, lambda x: mp.exp(-x*x), mono(16, mp.mpf(3)), 2, 4),
]
for name, f, w, phi, a, b in jobs:
    c, e = remez(f, w, phi, len(phi), a, b, grid=1500)
    print("/* minimax error %s (2^%s) */" % (mp.nstr(e, 4), mp.nstr(mp.log(e, 2), 4)))
    report(name, f, w, phi, c, a, b)
    print()
