"""Planner: repayment and settlement plans a customer can afford and the policy allows, exact to the cent."""
