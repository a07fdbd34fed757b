# Weighted minimax (Remez exchange) fit: minimise max |w(x) (f(x) - sum c_k phi_k(x))| on [a,b].
import mpmath as mp
mp.mp.prec = 256

def remez(f, w, phi, n, a, b, iters=30, grid=3000, verbose=False):
    a = mp.mpf(a); b = mp.mpf(b)
    m = n + 1
    xs = [ (a+b)/2 - (b-a)/2*mp.cos(mp.pi*i/(m-1)) for i in range(m)]
    G = [ (a+b)/2 - (b-a)/2*mp.cos(mp.pi*i/(grid-1)) for i in range(grid)]
    fG = [f(x) for x in G]; wG = [w(x) for x in G]; pG = [[p(x) for p in phi] for x in G]
    best = None
    for it in range(iters):
        A = mp.matrix(m, m); rhs = mp.matrix(m, 1)
        for i, x in enumerate(xs):
            for k in range(n):
                A[i, k] = phi[k](x)
            A[i, n] = (-1)**i / w(x)
            rhs[i] = f(x)
        sol = mp.lu_solve(A, rhs)
        c = [sol[k] for k in range(n)]
        E = sol[n]
        def err(x, fx=None, wx=None, px=None):
            fx = f(x) if fx is None else fx
            wx = w(x) if wx is None else wx
            px = [p(x) for p in phi] if px is None else px
            return wx * (fx - mp.fsum(ck*pk for ck, pk in zip(c, px)))
        e = [err(x, fG[i], wG[i], pG[i]) for i, x in enumerate(G)]
        # local extrema of e on the grid (include endpoints)
        ext = []
        for i in range(grid):
            l = e[i-1] if i > 0 else None; r = e[i+1] if i < grid-1 else None
            if (l is None or abs(e[i]) >= abs(l)) and (r is None or abs(e[i]) >= abs(r)):
                ext.append(i)
        # merge same-sign neighbours, keep the largest
        alt = []
        for i in ext:
            if alt and mp.sign(e[alt[-1]]) == mp.sign(e[i]):
                if abs(e[i]) > abs(e[alt[-1]]): alt[-1] = i
            else:
                alt.append(i)
        while len(alt) > m:
            if abs(e[alt[0]]) < abs(e[alt[-1]]): alt.pop(0)
            else: alt.pop()
        maxe = max(abs(v) for v in e)
        if verbose: print(it, mp.nstr(abs(E), 6), mp.nstr(maxe, 6), len(alt))
        if len(alt) < m:
            break
        # refine extrema with golden section on the neighbouring interval
        newxs = []
        for i in alt:
            lo = G[max(i-1, 0)]; hi = G[min(i+1, grid-1)]
            g = lambda x: -abs(err(x))
            for _ in range(40):
                x1 = lo + (hi-lo)*mp.mpf('0.381966'); x2 = lo + (hi-lo)*mp.mpf('0.618034')
                if g(x1) < g(x2): hi = x2
                else: lo = x1
            newxs.append((lo+hi)/2)
        xs = newxs
        best = (c, maxe)
        if maxe / abs(E) - 1 < mp.mpf('1e-6'): break
    return best

def to_double_check(f, w, phi, c, a, b, N=20000):
    cd = [mp.mpf(float(ck)) for ck in c]
    a = mp.mpf(a); b = mp.mpf(b)
    mx = 0
    for i in range(N+1):
        x = a + (b-a)*i/N
        v = abs(w(x)*(f(x) - mp.fsum(ck*p(x) for ck, p in zip(cd, phi))))
        if v > mx: mx = v
    return cd, mx

def report(name, f, w, phi, c, a, b):
    cd, mx = to_double_check(f, w, phi, c, a, b)
    print("/* %s: max weighted error with double coefficients %s (2^%s) */" % (name, mp.nstr(mx, 4), mp.nstr(mp.log(mx, 2), 4)))
    for k, ck in enumerate(cd):
        print("    %s, /* c%d = %s */" % (float(ck).hex(), k, mp.nstr(ck, 20)))
    return cd
