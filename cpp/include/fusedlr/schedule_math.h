#pragma once
// The elementary functions the schedules evaluate most, written out so the compiler inlines them.
//
// Why not <cmath> everywhere: on the CPU, glibc's cos is a 14 ns call and pow a 15-21 ns call
// (measured on the CI machine), and they were most of the cost of Schedule.curve(). cos_pi is a
// straight-line polynomial of about 20 flops, so a loop over steps overlaps several evaluations.
// Step-wise decays keep <cmath> pow (a curve takes it once per block of equal values); exponential
// decays take exp(t * log gamma), the logarithm computed once when the schedule is built (see
// schedule.h). Schedule.curve()
// and per-step calls go through the same functions, so they agree bit for bit; the CUDA build
// evaluates the same formulas (nvcc may contract them into FMAs: last-bit differences).
//
// cos_pi(x) = cos(pi x): x is reduced exactly to [0, 1] and then to |y| <= 1/4, where cos(pi y)
// or sin(pi y) is its Taylor series, truncated where the next term is below 1e-17 relative.
// Accuracy, checked against mpmath in tests/test_schedule_math.py: within 1.6 ulp.

#include "fusedlr/macros.h"

#include <cmath>
#include <cstdint>

namespace fusedlr {
namespace smath {

/** cos(pi x), for any x (NaN and infinities give NaN). */
FUSEDLR_HOST_DEVICE FUSEDLR_INLINE double cos_pi(double x) {
  double r = fabs(x);
  if (!(r < 2.0)) {
    // r - 2 floor(r/2) is exact (Sterbenz), and r >= 2^53 is an even integer: cos = 1.
    r = r < 9007199254740992.0 ? r - 2.0 * floor(r * 0.5) : (r == r && r != INFINITY ? 0.0 : NAN);
  }
  if (r > 1.0) r = 2.0 - r;  // cos(pi r) = cos(pi (2 - r)); exact
  // Now 0 <= r <= 1. Each branch moves to |y| <= 1/4 by an exact subtraction.
  double sign = 1.0, y = r;
  bool use_sin = false;
  if (r > 0.75) {
    sign = -1.0, y = 1.0 - r;  // cos(pi r) = -cos(pi (1 - r))
  } else if (r > 0.25) {
    sign = -1.0, y = r - 0.5, use_sin = true;  // cos(pi r) = -sin(pi (r - 1/2))
  }
  // Taylor series in z = y^2, evaluated in Estrin's scheme: short dependency chains let the
  // steps of a curve overlap in the pipeline.
  const double z = y * y, z2 = z * z, z4 = z2 * z2;
  if (use_sin) {
    // sin(pi y) = sum_k (-1)^k pi^(2k+1) y^(2k+1) / (2k+1)!, with pi in two parts for the first term.
    const double q = ((-5.16771278004997 + z * 2.5501640398773455) +
                      z2 * (-0.5992645293207921 + z * 0.08214588661112823)) +
                     z4 * ((-0.0073704309457143504 + z * 0.00046630280576761255) +
                           z2 * (-2.1915353447830217e-05 + z * 7.952054001475513e-07));
    return sign * (y * 3.141592653589793 + y * (1.2246467991473532e-16 + z * q));
  }
  // cos(pi y) = 1 + sum_{k>=1} (-1)^k pi^(2k) y^(2k) / (2k)!
  const double c = ((-4.934802200544679 + z * 4.0587121264167685) +
                    z2 * (-1.3352627688545895 + z * 0.2353306303588932)) +
                   z4 * ((-0.02580689139001406 + z * 0.0019295743094039231) +
                         z2 * (-0.0001046381049248457 + z * 4.303069587032947e-06));
  return sign * (1.0 + z * c);
}

/**
 * x^y: x for y = 1 (PolynomialLR's default), x*x for y = 2 (what a correctly rounded pow gives),
 * <cmath> pow otherwise. Whole-number powers of step-wise decays come here too: repeated squaring
 * would be faster but loses ~y/2 ulp; curves take those powers once per block of equal values
 * instead (schedule_curve.h).
 */
FUSEDLR_HOST_DEVICE FUSEDLR_INLINE double pow_fast_cases(double x, double y) {
  if (y == 1.0) return x;
  if (y == 2.0) return x * x;
  return ::pow(x, y);
}

/** nearbyint(x) in the default rounding mode (ties to even, signed zeros kept), without a libm call. */
FUSEDLR_HOST_DEVICE FUSEDLR_INLINE double round_even(double x) {
  const double a = fabs(x), two52 = 4503599627370496.0;
  // Below 2^52, adding 2^52 leaves no fraction bits: the sum rounds |x| to a whole number.
  return a < two52 ? copysign((a + two52) - two52, x) : x;  // from 2^52 on, x is whole
}

}  // namespace smath
}  // namespace fusedlr
