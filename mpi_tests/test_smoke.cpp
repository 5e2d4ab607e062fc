#include <gtest/gtest.h>
#include "physgrad/physics/diffusion.hpp"
#include "physgrad/core/environment.hpp"
using namespace physgrad;
TEST(Smoke, Builds) {
  GridSpec s; s.n = {16,16,1};
  Grid g(Environment::comm(), s);
  ImplicitDiffusionStep st(g, {1.0, 0.001});
  auto x = g.createGlobal(); auto y = g.createGlobal();
  VecSet(x, 1.0); st.forward(x, y);
  PetscReal n; VecNorm(y, NORM_2, &n);
  EXPECT_NEAR(n, 16.0, 1e-10);
}
