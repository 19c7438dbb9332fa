"""The causal loop: fine-tune a model on an edited mix (`chunky train`), write counter-examples
(`chunky balance`) and run grids of mixes (`chunky experiment`)."""
