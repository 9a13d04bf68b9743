"""quartermaster.planner"""
