// The differentiable op API.
#pragma once
#include "autograd/grad_mode.h"
#include "autograd/ops_activation.h"
#include "autograd/ops_arith.h"
#include "autograd/ops_conv.h"
#include "autograd/ops_index.h"
#include "autograd/ops_linalg.h"
#include "autograd/ops_loss.h"
#include "autograd/ops_norm.h"
#include "autograd/ops_reduce.h"
#include "core/factory.h"
